//! A tiny SQL text builder: identifiers come only from the cached schema (and are quoted), every
//! value is a bind parameter. Placeholders are numbered when the statement is rendered for a
//! [`Dialect`], so fragments can be built in any order and concatenated.
use sea_orm::{DbBackend, Statement, Value};

use crate::schema::Backend;

/// The per-backend differences the compiler needs, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl From<Backend> for Dialect {
    fn from(b: Backend) -> Dialect {
        match b {
            Backend::Sqlite => Dialect::Sqlite,
            Backend::Postgres => Dialect::Postgres,
        }
    }
}

impl Dialect {
    pub fn db_backend(self) -> DbBackend {
        match self {
            Dialect::Sqlite => DbBackend::Sqlite,
            Dialect::Postgres => DbBackend::Postgres,
        }
    }

    /// `EXISTS (SELECT 1 <from_where>)`. On SQLite the subquery carries `LIMIT 1`: SQLite
    /// 3.51's EXISTS-to-JOIN rewrite miscounts `OFFSET` (rows of the table joined in from the
    /// `EXISTS` are skipped as if they were result rows, so page 2 of a read filtered on a
    /// multi-entity field repeated page 1's ids), and it never rewrites a subquery with a
    /// `LIMIT`. PostgreSQL keeps the plain form, which it plans as a semi-join.
    pub fn exists(self, from_where: Sql) -> Sql {
        let exists = Sql::raw("EXISTS (SELECT 1").push(from_where);
        match self {
            Dialect::Sqlite => exists.text(" LIMIT 1)"),
            Dialect::Postgres => exists.text(")"),
        }
    }

    /// `expr` under bytewise ordering: PostgreSQL's default collation is locale-aware, SQLite's
    /// is BINARY, so ordered text comparisons and sorts say `COLLATE "C"` on PostgreSQL.
    pub fn bytewise(self, expr: Sql) -> Sql {
        match self {
            Dialect::Sqlite => expr,
            Dialect::Postgres => expr.text(" COLLATE \"C\""),
        }
    }

    fn placeholder(self, n: usize, out: &mut String) {
        match self {
            Dialect::Sqlite => out.push('?'),
            Dialect::Postgres => {
                out.push('$');
                out.push_str(&n.to_string());
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Param(Value),
}

/// A fragment of SQL with its bind values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sql {
    pieces: Vec<Piece>,
}

/// A quoted identifier (`"name"`), `"` doubled. Callers pass schema names only.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A constant of the schema (an entity type's name) as an SQL string literal. Constants are
/// written into the statement, not bound: a statement without parameters is planned once per
/// connection and its plan kept with the prepared statement, where PostgreSQL plans a
/// statement with parameters again on each of its first executions (~6 ms for a page with
/// eight link joins). Values from the request are always bound.
pub fn quoted(constant: &str) -> String {
    format!("'{}'", constant.replace('\'', "''"))
}

/// A boolean constant as SQL (both dialects know `TRUE` and `FALSE`).
pub fn truth(b: bool) -> &'static str {
    if b { "TRUE" } else { "FALSE" }
}

/// `alias."column"`.
pub fn col(alias: &str, column: &str) -> String {
    format!("{alias}.{}", ident(column))
}

impl Sql {
    pub fn new() -> Sql {
        Sql::default()
    }

    /// A fragment of trusted SQL text (keywords, quoted schema identifiers, aliases).
    pub fn raw(text: impl Into<String>) -> Sql {
        Sql {
            pieces: vec![Piece::Text(text.into())],
        }
    }

    /// A single bind parameter.
    pub fn param(v: impl Into<Value>) -> Sql {
        Sql {
            pieces: vec![Piece::Param(v.into())],
        }
    }

    pub fn text(mut self, text: impl Into<String>) -> Sql {
        self.pieces.push(Piece::Text(text.into()));
        self
    }

    pub fn bind(mut self, v: impl Into<Value>) -> Sql {
        self.pieces.push(Piece::Param(v.into()));
        self
    }

    pub fn push(mut self, other: Sql) -> Sql {
        self.pieces.extend(other.pieces);
        self
    }

    /// Number of bind parameters.
    pub fn param_count(&self) -> usize {
        self.pieces
            .iter()
            .filter(|p| matches!(p, Piece::Param(_)))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// `(a) SEP (b) SEP ...`; `empty` when there are no parts.
    ///
    /// Long lists are nested as a balanced tree so that the expression depth stays
    /// logarithmic (SQLite refuses expressions deeper than 1000).
    pub fn join(mut parts: Vec<Sql>, sep: &str, empty: &str) -> Sql {
        if parts.is_empty() {
            return Sql::raw(empty);
        }
        if parts.len() > 8 {
            let right = parts.split_off(parts.len() / 2);
            return Sql::join(
                vec![Sql::join(parts, sep, empty), Sql::join(right, sep, empty)],
                sep,
                empty,
            );
        }
        let mut out = Sql::new();
        for (i, p) in parts.into_iter().enumerate() {
            if i > 0 {
                out = out.text(sep);
            }
            out = out.text("(").push(p).text(")");
        }
        out
    }

    /// `(self)`.
    pub fn paren(self) -> Sql {
        Sql::raw("(").push(self).text(")")
    }

    /// The SQL text and values for `dialect`.
    pub fn render(&self, dialect: Dialect) -> (String, Vec<Value>) {
        let mut text = String::new();
        let mut values = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => text.push_str(t),
                Piece::Param(v) => {
                    values.push(v.clone());
                    dialect.placeholder(values.len(), &mut text);
                }
            }
        }
        (text, values)
    }

    pub fn statement(&self, dialect: Dialect) -> Statement {
        let (text, values) = self.render(dialect);
        Statement::from_sql_and_values(dialect.db_backend(), text, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_sql_literals() {
        assert_eq!(quoted("Shot"), "'Shot'");
        assert_eq!(quoted("it's"), "'it''s'");
        assert_eq!(truth(true), "TRUE");
        assert_eq!(truth(false), "FALSE");
    }

    #[test]
    fn renders_placeholders_per_dialect() {
        let s = Sql::raw("SELECT 1 WHERE a = ")
            .bind(1i64)
            .text(" AND b = ")
            .push(Sql::param("x"));
        assert_eq!(
            s.render(Dialect::Sqlite).0,
            "SELECT 1 WHERE a = ? AND b = ?"
        );
        let (t, v) = s.render(Dialect::Postgres);
        assert_eq!(t, "SELECT 1 WHERE a = $1 AND b = $2");
        assert_eq!(v.len(), 2);
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            Sql::join(vec![], " AND ", "TRUE").render(Dialect::Sqlite).0,
            "TRUE"
        );
    }
}
