//! probe: find the threads burning CPU and show what they are doing.
//!
//! Data flows one way: the kernel programs fill maps and a ring buffer; [`collect`] drains
//! them into a [`model::Recording`]; [`symbolize`] names the frames ([`model::Profile`]);
//! [`report`] turns that into the spin report (text or JSON).
//!
//! Diagnostics go to stderr through [`diag!`] only, which cannot panic.
#![warn(clippy::print_stderr)]

pub mod btf;
pub mod cli;
pub mod collect;
pub mod commands;
pub mod diag;
pub mod dump;
pub mod elf;
pub mod episodes;
pub mod event_log;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod output;
pub mod output_file;
pub mod preflight;
pub mod proc;
pub mod procmaps;
pub mod profile_dir;
pub mod profiles;
pub mod python;
pub mod report;
pub mod serve;
pub mod spawn;
pub mod symbolize;
pub mod syscall_names;
pub mod unwind;
