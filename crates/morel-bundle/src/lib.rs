//! morel-bundle
