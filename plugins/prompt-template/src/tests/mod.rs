//! The plugin's behaviour, tested natively through its plain functions.

mod configure;
mod requests;
