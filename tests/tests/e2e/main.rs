//! End-to-end tests against real servers on loopback.

mod cache;
mod proxy;
mod rfc9111;
mod verify;
