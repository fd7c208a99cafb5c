#ifndef CORTEX_COPENSSL_H
#define CORTEX_COPENSSL_H

// The system's OpenSSL (Debian's libssl-dev), linked by CortexStorage for TLS with client
// certificates (docs/decisions/032-system-openssl.md), and for the journal's Ed25519 signatures
// and SHA-256 chain (docs/decisions/044-signed-journal.md). Only what `TLSStream` and
// `SigningKey` need; the forwarders below exist because these are macros, which Swift cannot import.

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "CortexEd25519.h"

/// SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION): refuse anything older than TLS 1.2.
static inline int cortex_ssl_require_tls12(SSL_CTX *context) {
    return (int)SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
}

/// SSL_CTX_set_options(context, SSL_OP_IGNORE_UNEXPECTED_EOF): a peer that closes without
/// close_notify reads as the end of the stream (the HTTP framing above tells a cut-off body).
static inline void cortex_ssl_ignore_unexpected_eof(SSL_CTX *context) {
    SSL_CTX_set_options(context, SSL_OP_IGNORE_UNEXPECTED_EOF);
}

/// SSL_CTX_set_mode(context, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER): a retried SSL_write may
/// pass the same bytes from another address.
static inline void cortex_ssl_accept_moving_write_buffer(SSL_CTX *context) {
    SSL_CTX_set_mode(context, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/// SSL_set_tlsext_host_name(ssl, name): the server name sent in the handshake (SNI).
static inline int cortex_ssl_set_server_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

#endif
