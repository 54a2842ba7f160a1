//! cachet-proxy, the caching reverse proxy: being built.

fn main() {}
