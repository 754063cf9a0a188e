//! morel-store
