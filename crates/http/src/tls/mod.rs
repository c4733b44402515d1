//! TLS (RFC 8446, and 1.2 per RFC 5246) from rustls with the `ring` provider.

pub mod client;
