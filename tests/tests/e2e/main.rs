//! End-to-end tests against real servers on loopback.

mod body_key;
mod cache;
mod controls;
mod expiry;
mod filters;
mod keys;
mod manage;
mod manage_values;
mod proxy;
mod proxy_manage;
mod proxy_redis;
mod redirects;
mod redis;
mod rfc9111;
mod verify;
