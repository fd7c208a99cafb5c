# cortex-session.bash: drive `cortex session` as a bash coprocess (docs/decisions/038-session.md).
# Source it from a bash (5+) master; it defines three functions and runs nothing by itself:
#
#   source bin/cortex-session.bash
#   cortex_session_start [--name NAME] [--dir DIR]   # start a session (NAME: default "cortex")
#   cx ARGS…                                         # = cortex ARGS…: same stdout, stderr, exit code
#   cx -v VAR ARGS…                                  # the same, stdout into VAR (no subshell)
#   cortex_session_stop [--name NAME]                # end it (stdin closed, the process waited for)
#
# Several sessions per master: start each with its own --name, then choose one per call with
# CX_SESSION=NAME (`CX_SESSION=other cx task list`). A session that died is started again by the
# next cx, with the same --dir; a request it was answering when it died is not sent again (it
# may be in the journal): that call returns 74. A session that cannot be started returns 74.
# A `cx` in a command substitution ($(cx …)) runs in a subshell: a restart there lasts for that
# call only, so prefer `cx -v VAR …` in loops (it also saves the fork).
#
# CX_CORTEX names the cortex executable (default: cortex on PATH). Sourcing sets a no-op trap
# on SIGPIPE when the master has none, so that writing to a session that just died fails the
# write instead of killing the master; programs the master runs still get the default SIGPIPE.
#
# Framing (docs/cli.md): a request is printf '%s\0' "$#" "$@"; an answer is a line
# "EXIT OUT_BYTES ERR_BYTES ENCODING", then those bytes of stdout, then of stderr. A 7-bit answer
# ("ascii") is read with read -N (one read(2) a stream); in others ("bytes") each stream is
# followed by a NUL and read with read -d '', since read -N counts the locale's characters.

declare -gA _cx_dirs=()
[[ -z $(trap -p PIPE) ]] && trap ':' PIPE

# _cx_launch NAME: starts the coprocess of session NAME and checks that it answers.
_cx_launch() {
  local name=$1 co="_cx_co_$1" dir=${_cx_dirs[$1]} saved_stderr
  local -a command=("${CX_CORTEX:-cortex}" session)
  [[ -n $dir ]] && command+=(--dir "$dir")
  # bash warns when a second coprocess starts while another lives: that warning is not ours.
  exec {saved_stderr}>&2
  # exec: the coprocess is cortex itself (its pid is the session's; bash's coprocess descriptors
  # are close-on-exec, so no session holds another's pipes).
  { eval "coproc $co { exec \"\${command[@]}\" 2>&$saved_stderr $saved_stderr>&-; }"; } 2>/dev/null
  exec {saved_stderr}>&-
  local -n fds=$co
  local header= out= err=
  if printf '%s\0' 1 --version >&"${fds[1]}" 2>/dev/null && IFS= read -r header <&"${fds[0]}" \
    && [[ $header =~ ^0\ ([0-9]+)\ 0\ ascii$ ]] && IFS= read -r -N "${BASH_REMATCH[1]}" out <&"${fds[0]}"; then
    return 0
  fi
  _cx_close "$name"
  return 74
}

# _cx_close NAME: closes session NAME's pipes and ends its process. A subshell the master
# forked (`( … ) &`) holds copies of the pipes, so the session may never see its end of input:
# it is idle (cx waits for each answer), and SIGTERM ends it.
_cx_close() {
  local co="_cx_co_$1"
  local pid_var="${co}_PID"
  local -n fds=$co
  local pid=${!pid_var-}
  [[ -n ${fds[1]-} ]] && eval "exec ${fds[1]}>&-"
  [[ -n ${fds[0]-} ]] && eval "exec ${fds[0]}<&-"
  if [[ -n $pid ]]; then
    # Its status (143 after SIGTERM) is not the caller's: a master under `set -e` goes on.
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  unset "$co" "$pid_var"
  return 0
}

# cortex_session_start [--name NAME] [--dir DIR]: starts a session (returns 74 if it cannot).
cortex_session_start() {
  local name=${CX_SESSION:-cortex} dir=
  while (($#)); do
    case $1 in
      --name) name=$2; shift 2 ;;
      --dir) dir=$2; shift 2 ;;
      --name=*) name=${1#--name=}; shift ;;
      --dir=*) dir=${1#--dir=}; shift ;;
      *) printf 'cortex_session_start: unknown argument %q (--name NAME, --dir DIR)\n' "$1" >&2; return 64 ;;
    esac
  done
  if [[ ! $name =~ ^[A-Za-z0-9_]+$ ]]; then
    printf 'cortex_session_start: invalid session name %q (letters, digits, _)\n' "$name" >&2
    return 64
  fi
  _cx_close "$name"
  _cx_dirs[$name]=$dir
  if ! _cx_launch "$name"; then
    printf 'cortex_session_start: cannot start %s session (is it on PATH, or set CX_CORTEX?)\n' "${CX_CORTEX:-cortex}" >&2
    return 74
  fi
}

# cortex_session_stop [--name NAME]: ends a session.
cortex_session_stop() {
  local name=${CX_SESSION:-cortex}
  case ${1-} in
    --name) name=$2 ;;
    --name=*) name=${1#--name=} ;;
  esac
  [[ $name =~ ^[A-Za-z0-9_]+$ ]] || return 64
  _cx_close "$name"
  unset '_cx_dirs[$name]'
  return 0
}

# cortex_session_pid [--name NAME]: prints the session's process id (empty when none runs).
cortex_session_pid() {
  local name=${CX_SESSION:-cortex}
  [[ ${1-} == --name ]] && name=$2
  local pid_var="_cx_co_${name}_PID"
  printf '%s\n' "${!pid_var-}"
}

# _cx_send NAME ARGS…: sends a request to session NAME, starting it (again) when its pipe is
# gone or a write fails. A write that fails never reached a session whole (a session runs only
# whole requests), so sending it to a new one cannot run it twice.
_cx_send() {
  local name=$1 try
  shift
  if [[ ! -v "_cx_dirs[$name]" ]]; then
    printf 'cx: no session %s (cortex_session_start --name %s first)\n' "$name" "$name" >&2
    return 74
  fi
  local -n fds="_cx_co_$name"
  for try in 1 2; do
    [[ -n ${fds[1]-} ]] && printf '%s\0' "$#" "$@" >&"${fds[1]}" 2>/dev/null && return 0
    _cx_close "$name"
    if ! _cx_launch "$name"; then
      printf 'cx: the %s session died and cannot be started again\n' "$name" >&2
      return 74
    fi
  done
  printf 'cx: cannot send the request to the %s session\n' "$name" >&2
  return 74
}

# cx [-v VAR] ARGS…: runs `cortex ARGS…` in the session named by CX_SESSION (default "cortex").
cx() {
  local _cx_var=
  if [[ ${1-} == -v ]]; then
    _cx_var=$2
    shift 2
  fi
  local _cx_name=${CX_SESSION:-cortex}
  if [[ ! $_cx_name =~ ^[A-Za-z0-9_]+$ ]]; then
    printf 'cx: invalid session name %q\n' "$_cx_name" >&2
    return 64
  fi
  local -n _cx_fds="_cx_co_$_cx_name"
  # The fast path: the session's pipe is there and takes the request.
  if [[ -z ${_cx_fds[1]-} ]] || ! printf '%s\0' "$#" "$@" >&"${_cx_fds[1]}" 2>/dev/null; then
    _cx_send "$_cx_name" "$@" || return
  fi
  local _cx_header= _cx_out= _cx_err= _cx_read=
  if IFS= read -r _cx_header <&"${_cx_fds[0]}"; then
    local IFS=' '
    local -a _cx_sizes=($_cx_header)
    if [[ ${_cx_sizes[3]-} == ascii ]]; then
      # 7-bit streams, no NULs: characters are bytes, and read -N takes a stream in one read(2).
      { ((_cx_sizes[1] == 0)) || IFS= read -r -N "${_cx_sizes[1]}" _cx_out <&"${_cx_fds[0]}"; } \
        && { ((_cx_sizes[2] == 0)) || IFS= read -r -N "${_cx_sizes[2]}" _cx_err <&"${_cx_fds[0]}"; } && _cx_read=1
    else
      IFS= read -r -d '' _cx_out <&"${_cx_fds[0]}" && IFS= read -r -d '' _cx_err <&"${_cx_fds[0]}" && _cx_read=1
    fi
  fi
  if [[ -z $_cx_read ]]; then
    _cx_close "$_cx_name"
    printf 'cx: the %s session ended during the request (it may have been recorded; the next cx starts a new session)\n' \
      "$_cx_name" >&2
    return 74
  fi
  if [[ -n $_cx_var ]]; then
    # As $(…) would keep it: without the trailing newlines.
    while [[ $_cx_out == *$'\n' ]]; do _cx_out=${_cx_out%$'\n'}; done
    printf -v "$_cx_var" '%s' "$_cx_out"
  elif [[ -n $_cx_out ]]; then
    printf '%s' "$_cx_out"
  fi
  [[ -z $_cx_err ]] || printf '%s' "$_cx_err" >&2
  return "${_cx_header%% *}"
}
