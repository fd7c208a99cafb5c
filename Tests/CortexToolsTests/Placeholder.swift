// Replaced by the end-to-end suite.
