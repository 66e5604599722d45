//! Text tables for the terminal: every column as wide as its widest cell (header
//! included), numbers right-aligned, two spaces between columns.

use std::fmt::Write;

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: padded on the right.
    Left,
    /// Numbers: padded on the left.
    Right,
}

/// Rows of cells under a header, rendered with aligned columns.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Table { columns: columns.iter().map(|(name, align)| (name.to_string(), *align)).collect(), rows: Vec::new() }
    }

    /// Adds a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    /// The header and the rows, one line each; the last column is never padded.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| self.rows.iter().map(|row| row[i].chars().count()).chain([self.columns[i].0.chars().count()]).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|(name, _)| name.clone()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let last = i + 1 == cells.len();
                let pad = widths[i] - cell.chars().count();
                match (self.columns[i].1, last) {
                    (Align::Right, _) => line.push_str(&format!("{}{cell}", " ".repeat(pad))),
                    (Align::Left, true) => line.push_str(cell),
                    (Align::Left, false) => line.push_str(&format!("{cell}{}", " ".repeat(pad))),
                }
                if !last {
                    line.push_str("  ");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// A byte count as people read it (`1.50 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&[("NAME", Align::Left), ("SIZE", Align::Right), ("STATUS", Align::Left)]);
        table.row(vec!["2018-04-04T11_37".into(), human_bytes(1536), "complete".into()]);
        table.row(vec!["b".into(), human_bytes(12), "INCOMPLETE (no sidecar manifest)".into()]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("NAME{}SIZE  STATUS", " ".repeat(18)));
        assert_eq!(lines[1], "2018-04-04T11_37  1.50 KiB  complete");
        assert_eq!(lines[2], format!("b{}12 B  INCOMPLETE (no sidecar manifest)", " ".repeat(21)));
    }
}
