//! keygate-server
