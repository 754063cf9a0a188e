//! morel-gateway
