//! The SQLite RPM database of RHEL/UBI 9 (`rpmdb.sqlite`): table `Packages(hnum, blob)`, one header blob per
//! package. The database (and its write-ahead log, when the layer has one) is copied to a private temp
//! directory and opened there: SQLite needs a file, and the image's copy is never touched.

use rusqlite::{Connection, OpenFlags};

use super::super::scan::OsPackage;

/// The packages of an `rpmdb.sqlite` held in memory, with its `-wal` file when there is one.
pub fn packages(db: &[u8], wal: Option<&[u8]>) -> Result<Vec<OsPackage>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let path = dir.path().join("rpmdb.sqlite");
    std::fs::write(&path, db).map_err(|e| e.to_string())?;
    if let Some(wal) = wal.filter(|w| !w.is_empty()) {
        std::fs::write(dir.path().join("rpmdb.sqlite-wal"), wal).map_err(|e| e.to_string())?;
    }
    // Read-write on the private copy, so SQLite can replay the log; nothing is written back anywhere.
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| e.to_string())?;
    let mut stmt = conn.prepare("SELECT blob FROM Packages ORDER BY hnum").map_err(|e| e.to_string())?;
    let blobs: Vec<Vec<u8>> = stmt
        .query_map([], |row| row.get::<_, Vec<u8>>(0))
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    super::packages_from_blobs(blobs.iter().map(Vec::as_slice))
}

#[cfg(test)]
mod tests {
    use super::super::header::{self, encode};

    #[test]
    fn reads_packages_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);")
            .unwrap();
        for name in ["zlib", "bash", "gpg-pubkey"] {
            let blob = encode(&[(header::NAME, name), (header::VERSION, "1"), (header::RELEASE, "1.el9")], &[]);
            conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [blob]).unwrap();
        }
        drop(conn);
        let bytes = std::fs::read(&path).unwrap();
        let p = super::packages(&bytes, None).unwrap();
        assert_eq!(p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["bash", "zlib"]);
        assert!(super::packages(b"not a database", None).is_err());
    }
}
