//! Local KMS emulator.
