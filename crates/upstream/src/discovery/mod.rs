//! Host discovery: `STATIC` endpoints are hosts as given; `STRICT_DNS` and
//! `LOGICAL_DNS` endpoints are resolved periodically by a task.

pub(crate) mod dns;
pub(crate) mod static_;
