//! Shared by the round-trip tests (golden files, properties, the Dockerfile corpus): an export
//! written to disk and read back, compared with the original as far as the export says it
//! carries it; and the count, per format, of the round trips compared, with floors, so that a
//! format that stops being compared fails the test instead of passing unseen.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;

use terrarium_spec::formats::{self, ExportNote, Exported, Format};
use terrarium_spec::{content_hash, Definition};

/// The formats that export.
pub const EXPORTS: [Format; 6] = [
    Format::Native,
    Format::AmlV2,
    Format::AmlV1,
    Format::Conda,
    Format::Requirements,
    Format::Dockerfile,
];

/// Write `exported` as `env export -o` lays it out, and read it back as `format`.
pub fn write_and_import(exported: &Exported, format: Format) -> Result<Definition, String> {
    let dir = tempfile::tempdir().unwrap();
    let target = match format {
        Format::AmlV1 | Format::AmlV2 => dir.path().join("out"),
        Format::Requirements => dir.path().join("requirements.txt"),
        Format::Dockerfile => dir.path().join("Dockerfile"),
        _ => dir.path().join("environment.yml"),
    };
    for (name, text) in &exported.files {
        let path = if name.is_empty() {
            target.clone()
        } else {
            target.join(name)
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let read = if format == Format::AmlV2 {
        target.join("environment.yml")
    } else {
        target
    };
    formats::import(&read, Some(format))
        .map(|imported| imported.definition)
        .map_err(|e| {
            format!(
                "{format}: the export does not read back: {e}\n{:#?}",
                exported.files
            )
        })
}

/// How a round trip was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compared {
    /// What came back has the content hash of the original without the fields the export
    /// dropped.
    Whole,
    /// The export's notes say it changes some fields (a pip-only environment written as a
    /// conda one, packages written as a Dockerfile's build steps): what came back has the
    /// content hash of the original without those fields and the dropped ones, and exports to
    /// the same files.
    ButChanged,
}

/// Read `exported` (the export of `original` to `format`) back and compare it with the
/// original as far as the export says it carries it. The error says what differs.
pub fn round_trip(
    original: &Definition,
    format: Format,
    exported: &Exported,
) -> Result<Compared, String> {
    let back = write_and_import(exported, format)?;
    let changed: Vec<String> = exported
        .notes
        .iter()
        .flat_map(ExportNote::changes)
        .map(|field| field.to_string())
        .collect();
    let gone = [exported.dropped.clone(), changed.clone()].concat();
    let expected = formats::without_fields(original, &gone);
    let back_unchanged = formats::without_fields(&back, &changed);
    if content_hash(&back_unchanged) != content_hash(&expected) {
        return Err(format!(
            "{format}: the round trip changed the content (not counting {changed:?}):\n{}\nexport:\n{:#?}",
            terrarium_spec::diff(&expected, &back_unchanged),
            exported.files
        ));
    }
    if changed.is_empty() {
        return Ok(Compared::Whole);
    }
    // What the export changed, it writes back the same way.
    match formats::export(&back, format) {
        Ok(again) if again.files == exported.files => Ok(Compared::ButChanged),
        Ok(again) => Err(format!(
            "{format}: what came back exports to other files:\n{:#?}\nfirst export:\n{:#?}",
            again.files, exported.files
        )),
        Err(err) => Err(format!("{format}: what came back does not export: {err}")),
    }
}

/// What became of the exports to one format.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Round trips compared whole.
    pub whole: usize,
    /// Round trips compared but for the fields their notes change.
    pub but_changed: usize,
    /// Definitions the format refused to export.
    pub refused: usize,
}

impl Counts {
    pub fn compared(&self) -> usize {
        self.whole + self.but_changed
    }
}

/// The counts of a test, per format.
#[derive(Debug, Default)]
pub struct Tally(BTreeMap<&'static str, Counts>);

/// The fewest round trips a format must compare: whole, and at all (whole or but for the
/// fields its notes change). In cases, or in percent of the cases for a property.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub format: Format,
    pub whole: usize,
    pub at_all: usize,
}

impl Floor {
    pub const fn new(format: Format, whole: usize, at_all: usize) -> Self {
        Self {
            format,
            whole,
            at_all,
        }
    }
}

impl Tally {
    fn count(&mut self, format: Format) -> &mut Counts {
        self.0.entry(format.name()).or_default()
    }

    pub fn refused(&mut self, format: Format) {
        self.count(format).refused += 1;
    }

    pub fn compared(&mut self, format: Format, compared: Compared) {
        let count = self.count(format);
        match compared {
            Compared::Whole => count.whole += 1,
            Compared::ButChanged => count.but_changed += 1,
        }
    }

    /// Print the counts of `test`, and fail when a format compared fewer round trips than its
    /// floor, in cases; or has no floor.
    pub fn assert_floors(&self, test: &str, floors: &[Floor]) {
        self.assert(test, floors, None);
    }

    /// The same, with floors in percent of `cases`.
    pub fn assert_shares(&self, test: &str, cases: usize, floors: &[Floor]) {
        self.assert(test, floors, Some(cases));
    }

    fn assert(&self, test: &str, floors: &[Floor], cases: Option<usize>) {
        let mut failures = Vec::new();
        for floor in floors {
            let count = self.0.get(floor.format.name()).copied().unwrap_or_default();
            let (whole, at_all, unit) = match cases {
                None => (count.whole, count.compared(), ""),
                Some(cases) => (
                    count.whole * 100 / cases.max(1),
                    count.compared() * 100 / cases.max(1),
                    "%",
                ),
            };
            let of = cases.map(|c| format!(" of {c} cases")).unwrap_or_default();
            let share = |n: usize| match cases {
                None => String::new(),
                Some(_) => format!("{n}%, "),
            };
            eprintln!(
                "{test}: {}: {}{of} compared whole ({}floor {}{unit}), {} but for the fields \
                 their notes change ({} at all, floor {}{unit}), {} refused",
                floor.format,
                count.whole,
                share(whole),
                floor.whole,
                count.but_changed,
                match cases {
                    None => count.compared().to_string(),
                    Some(_) => format!("{at_all}%"),
                },
                floor.at_all,
                count.refused,
            );
            if whole < floor.whole || at_all < floor.at_all {
                failures.push(format!(
                    "{}: {whole}{unit} compared whole and {at_all}{unit} at all, under the floors \
                     {}{unit} and {}{unit}: {count:?}",
                    floor.format, floor.whole, floor.at_all
                ));
            }
        }
        for format in self.0.keys() {
            if !floors.iter().any(|floor| floor.format.name() == *format) {
                failures.push(format!("{format} has no floor"));
            }
        }
        assert!(
            failures.is_empty(),
            "{test}: fewer round trips compared than before:\n{}",
            failures.join("\n")
        );
    }
}
