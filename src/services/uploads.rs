//! CSV files waiting between their preview and their import, under `data_dir/uploads/<org>`:
//! bounded per org in number and age, here and by housekeeping.

use std::path::{Path, PathBuf};

use crate::app::App;

/// Uploads waiting for their import, per org; older ones beyond this are removed.
pub const MAX_UPLOADS_PER_ORG: usize = 5;
/// Uploads older than this are left-overs of previews never imported.
pub const UPLOAD_MAX_AGE_SECS: u64 = 86_400;

/// Removes `dir`'s uploads older than a day and, newest first, all but the `keep` newest.
pub fn prune_uploads(dir: &Path, keep: usize) -> std::io::Result<usize> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut removed = 0;
    for (i, (modified, path)) in files.iter().enumerate() {
        let old = modified
            .elapsed()
            .is_ok_and(|age| age.as_secs() > UPLOAD_MAX_AGE_SECS);
        if (old || i >= keep) && std::fs::remove_file(path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Where an org's uploads wait between preview and import.
pub fn uploads_dir(app: &App, org_id: i64) -> PathBuf {
    app.data_dir().join("uploads").join(org_id.to_string())
}

/// Housekeeping: every org's uploads pruned by age and count. Returns the files removed.
pub fn prune_all(app: &App) -> usize {
    let Ok(orgs) = std::fs::read_dir(app.data_dir().join("uploads")) else {
        return 0;
    };
    orgs.flatten()
        .map(|dir| prune_uploads(&dir.path(), MAX_UPLOADS_PER_ORG).unwrap_or(0))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seven files: the five newest stay, the two oldest go; a file older than a day goes
    /// even when fewer are waiting.
    #[test]
    fn uploads_are_bounded_by_count_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        for i in 0..7u64 {
            let path = dir.path().join(format!("{i}.csv"));
            std::fs::write(&path, "x").unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(now - std::time::Duration::from_secs(60 * (7 - i)))
                .unwrap();
        }
        assert_eq!(prune_uploads(dir.path(), 5).unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["2.csv", "3.csv", "4.csv", "5.csv", "6.csv"]);
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join("6.csv"))
            .unwrap();
        f.set_modified(now - std::time::Duration::from_secs(UPLOAD_MAX_AGE_SECS + 60))
            .unwrap();
        assert_eq!(prune_uploads(dir.path(), 5).unwrap(), 1);
    }
}
