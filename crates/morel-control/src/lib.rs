//! morel-control
