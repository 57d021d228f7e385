//! Which stored stages a restart takes and which it drops.
