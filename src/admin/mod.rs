//! The admin CLI (`weir topic|produce|consume|group|cluster|diagnose-connection`): Kafka
//! protocol requests through `crate::client`, against any broker. Every command can answer
//! in text for people or in JSON (`--format json`) for scripts.

pub mod cluster_info;
pub mod consume;
pub mod group;
mod offsets;
pub mod produce;
pub mod topic;

use std::fmt::Write as _;

use serde_json::Value;
use thiserror::Error;

use crate::client::ClientError;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The command ran and found a problem (diagnose-connection): its report is printed and
    /// the process exits non-zero.
    #[error("{0}")]
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    pub fn parse(value: &str) -> Result<Format, AdminError> {
        match value {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(AdminError::Usage(format!(
                "--format {other}: expected text or json"
            ))),
        }
    }
}

/// A command's answer: the JSON document, and how it reads as text.
#[derive(Debug)]
pub struct Report {
    pub json: Value,
    pub text: String,
}

impl Report {
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => format!("{}\n", self.json),
            Format::Text => self.text.clone(),
        }
    }
}

/// Left-aligned columns under a header row, as Kafka's tools print them.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                let _ = write!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// Parses `key=value`.
pub fn key_value(text: &str) -> Result<(String, String), AdminError> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| AdminError::Usage(format!("`{text}`: expected key=value")))
}
