//! Simulation stack launcher.
fn main() {}
