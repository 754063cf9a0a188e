//! morel-manifest
