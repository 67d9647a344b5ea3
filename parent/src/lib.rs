//! The parent daemon.
