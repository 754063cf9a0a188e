//! The published @metacall/deploy client against Morel (written next).
