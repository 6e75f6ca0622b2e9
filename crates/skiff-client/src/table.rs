//! Rendering of server-side `Table` responses like kubectl's printer (Go tabwriter layout).

use serde_json::Value;

/// kubectl's tabwriter settings for `get`: minimum cell width 6, padding 3.
pub const GET_MIN_WIDTH: usize = 6;
pub const GET_PADDING: usize = 3;

/// What to show of a `Table`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// `-o wide`: also columns with `priority > 0`.
    pub wide: bool,
    /// `-A`: a `NAMESPACE` column first, from each row's object metadata.
    pub with_namespace: bool,
    /// Prefix names with `kind/` (kubectl does this when several resource types are printed).
    pub kind_prefix: Option<String>,
    pub no_headers: bool,
}

/// Prints tables and later watch rows with column widths remembered across calls (like Go's
/// `tabwriter.RememberWidths`), so `get -w` rows line up with the first table.
#[derive(Debug, Clone, Default)]
pub struct TablePrinter {
    pub opts: TableOptions,
    widths: Vec<usize>,
    header_done: bool,
}

fn columns(table: &Value) -> &[Value] {
    table.get("columnDefinitions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// A cell as kubectl prints it: strings as-is, numbers and booleans in JSON form, null as `<none>`.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

impl TablePrinter {
    pub fn new(opts: TableOptions) -> Self {
        TablePrinter { opts, widths: Vec::new(), header_done: false }
    }

    /// Indices of the columns shown.
    fn visible(&self, table: &Value) -> Vec<usize> {
        columns(table)
            .iter()
            .enumerate()
            .filter(|(_, c)| self.opts.wide || c.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
            .map(|(i, _)| i)
            .collect()
    }

    fn name_column(table: &Value) -> usize {
        columns(table)
            .iter()
            .position(|c| c.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case("name")))
            .unwrap_or(0)
    }

    /// The header cells (upper-cased column names).
    pub fn header(&self, table: &Value) -> Vec<String> {
        let cols = columns(table);
        let mut h: Vec<String> = Vec::new();
        if self.opts.with_namespace {
            h.push("NAMESPACE".into());
        }
        for i in self.visible(table) {
            h.push(cols[i].get("name").and_then(Value::as_str).unwrap_or("").to_uppercase());
        }
        h
    }

    /// The data rows as cell text.
    pub fn rows(&self, table: &Value) -> Vec<Vec<String>> {
        let visible = self.visible(table);
        let name_col = Self::name_column(table);
        let rows = table.get("rows").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        rows.iter()
            .map(|row| {
                let cells = row.get("cells").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                let mut out = Vec::with_capacity(visible.len() + 1);
                if self.opts.with_namespace {
                    let ns = row.pointer("/object/metadata/namespace").and_then(Value::as_str).unwrap_or("");
                    out.push(ns.to_string());
                }
                for &i in &visible {
                    let mut text = cells.get(i).map(cell_text).unwrap_or_default();
                    if i == name_col {
                        if let Some(k) = &self.opts.kind_prefix {
                            text = format!("{k}/{text}");
                        }
                    }
                    out.push(text);
                }
                out
            })
            .collect()
    }

    /// Render `table`: the header (once per printer, unless `no_headers`) and its rows. An
    /// empty table renders nothing.
    pub fn render(&mut self, table: &Value) -> String {
        let rows = self.rows(table);
        if rows.is_empty() {
            return String::new();
        }
        let mut lines = Vec::with_capacity(rows.len() + 1);
        if !self.header_done && !self.opts.no_headers {
            lines.push(self.header(table));
        }
        self.header_done = true;
        lines.extend(rows);
        format_rows(&lines, &mut self.widths, GET_MIN_WIDTH, GET_PADDING)
    }
}

/// Lay out rows of cells with every column but the last padded to a common width:
/// `max(min_width, widest cell + padding)`, never narrower than `widths` remembers.
pub fn format_rows(lines: &[Vec<String>], widths: &mut Vec<usize>, min_width: usize, padding: usize) -> String {
    for line in lines {
        for (i, cell) in line.iter().enumerate().take(line.len().saturating_sub(1)) {
            let w = (cell.chars().count() + padding).max(min_width);
            if widths.len() <= i {
                widths.push(w);
            } else if widths[i] < w {
                widths[i] = w;
            }
        }
    }
    let mut out = String::new();
    for line in lines {
        for (i, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < line.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// Go `text/tabwriter` layout of tab-separated text (no flags): a column block is a run of
/// consecutive lines that have a tab-terminated cell in that column; the text after a line's
/// last tab is not aligned. Used for `describe`.
pub fn tabwrite(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths = Vec::new();
    let mut out = String::new();
    format_block(&lines, 0, lines.len(), &mut widths, min_width, padding, &mut out);
    out
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                // A terminated cell beyond the known columns is written unpadded, as in Go.
                let pad = widths.get(j).map_or(0, |w| w.saturating_sub(cell.chars().count()));
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    min_width: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = min_width;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, min_width, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods_table() -> Value {
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "12"},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "priority": 0},
                {"name": "Ready", "type": "string", "priority": 0},
                {"name": "Status", "type": "string", "priority": 0},
                {"name": "Restarts", "type": "integer", "priority": 0},
                {"name": "Age", "type": "string", "priority": 0},
                {"name": "IP", "type": "string", "priority": 1},
                {"name": "Node", "type": "string", "priority": 1}
            ],
            "rows": [
                {"cells": ["web-1", "1/1", "Running", 0, "5m", "10.0.0.5", "node-a"],
                 "object": {"metadata": {"name": "web-1", "namespace": "default"}}},
                {"cells": ["db", "0/1", "ContainerCreating", 12, "3s", null, "node-b"],
                 "object": {"metadata": {"name": "db", "namespace": "prod"}}}
            ]
        })
    }

    #[test]
    fn default_columns_like_kubectl() {
        let mut p = TablePrinter::new(TableOptions::default());
        assert_eq!(
            p.render(&pods_table()),
            "NAME    READY   STATUS              RESTARTS   AGE\n\
             web-1   1/1     Running             0          5m\n\
             db      0/1     ContainerCreating   12         3s\n"
        );
    }

    #[test]
    fn wide_and_all_namespaces() {
        let mut p = TablePrinter::new(TableOptions { wide: true, with_namespace: true, ..Default::default() });
        assert_eq!(
            p.render(&pods_table()),
            "NAMESPACE   NAME    READY   STATUS              RESTARTS   AGE   IP         NODE\n\
             default     web-1   1/1     Running             0          5m    10.0.0.5   node-a\n\
             prod        db      0/1     ContainerCreating   12         3s    <none>     node-b\n"
        );
    }

    #[test]
    fn watch_rows_reuse_widths_and_skip_the_header() {
        let mut p = TablePrinter::new(TableOptions { kind_prefix: Some("pod".into()), ..Default::default() });
        let first = p.render(&pods_table());
        assert!(first.starts_with("NAME        READY"), "{first}");
        let mut ev = pods_table();
        ev["rows"] = json!([{"cells": ["x", "1/1", "Running", 0, "1s", "", ""]}]);
        assert_eq!(p.render(&ev), "pod/x       1/1     Running             0          1s\n");
        let mut empty = pods_table();
        empty["rows"] = json!([]);
        assert_eq!(TablePrinter::new(TableOptions::default()).render(&empty), "");
        let mut nh = TablePrinter::new(TableOptions { no_headers: true, ..Default::default() });
        assert!(nh.render(&pods_table()).starts_with("web-1"));
    }

    #[test]
    fn go_tabwriter_blocks() {
        let text = "Name:\tweb\nLabels:\tapp=web\n\ttier=front\nContainers:\n  web:\n    Image:\tbusybox\n    Restart Count:\t0\n";
        assert_eq!(
            tabwrite(text, 0, 2),
            "Name:    web\nLabels:  app=web\n         tier=front\nContainers:\n  web:\n    Image:          busybox\n    Restart Count:  0\n"
        );
    }
}
