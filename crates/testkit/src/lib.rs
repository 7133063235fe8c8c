//! Test support for mitogen-rs.
