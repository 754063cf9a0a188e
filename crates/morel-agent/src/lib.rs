//! morel-agent
