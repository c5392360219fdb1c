//! One module per hook family.
pub mod connect;
pub mod io;
pub mod process;
