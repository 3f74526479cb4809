//! Organisations (tenants) and memberships.

use rusqlite::{Connection, Row, params};
use serde::Serialize;

use super::{OptionalRow, unique_conflict};
use crate::domain::roles::Role;
use crate::store::{StoreError, now_secs};

#[derive(Debug, Clone, Serialize)]
pub struct Org {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub time_zone: String,
    pub currency: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub user_id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: i64,
}

const ORG_COLUMNS: &str = "id, slug, name, time_zone, currency, created_at";

fn org_from_row(r: &Row) -> rusqlite::Result<Org> {
    Ok(Org {
        id: r.get(0)?,
        slug: r.get(1)?,
        name: r.get(2)?,
        time_zone: r.get(3)?,
        currency: r.get(4)?,
        created_at: r.get(5)?,
    })
}

pub fn role_from_sql(s: String) -> rusqlite::Result<Role> {
    Role::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("bad role {s}").into(),
        )
    })
}

pub fn create(
    conn: &Connection,
    slug: &str,
    name: &str,
    time_zone: &str,
    currency: &str,
) -> Result<Org, StoreError> {
    conn.execute(
        "INSERT INTO orgs (slug, name, time_zone, currency, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![slug, name, time_zone, currency, now_secs()],
    )
    .map_err(|e| unique_conflict(e, "an organisation with this slug already exists"))?;
    by_id(conn, conn.last_insert_rowid())
}

pub fn by_id(conn: &Connection, id: i64) -> Result<Org, StoreError> {
    conn.prepare_cached(&format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = ?1"))?
        .query_row([id], org_from_row)
        .found()
}

pub fn by_slug(conn: &Connection, slug: &str) -> Result<Org, StoreError> {
    conn.query_row(
        &format!("SELECT {ORG_COLUMNS} FROM orgs WHERE slug = ?1"),
        [slug],
        org_from_row,
    )
    .found()
}

pub fn count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM orgs", [], |r| r.get(0))?)
}

/// The organisations a user belongs to, with the user's role in each.
pub fn for_user(conn: &Connection, user_id: i64) -> Result<Vec<(Org, Role)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.id, o.slug, o.name, o.time_zone, o.currency, o.created_at, m.role
         FROM orgs o JOIN memberships m ON m.org_id = o.id WHERE m.user_id = ?1 ORDER BY o.name",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok((org_from_row(r)?, role_from_sql(r.get(6)?)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The user's role in the org by slug; NotFound when the org is missing *or* the user is not a
/// member, so a page cannot tell the two apart.
pub fn membership_by_slug(
    conn: &Connection,
    user_id: i64,
    slug: &str,
) -> Result<(Org, Role), StoreError> {
    conn.prepare_cached(
        "SELECT o.id, o.slug, o.name, o.time_zone, o.currency, o.created_at, m.role
         FROM orgs o JOIN memberships m ON m.org_id = o.id WHERE m.user_id = ?1 AND o.slug = ?2",
    )?
    .query_row(params![user_id, slug], |r| {
        Ok((org_from_row(r)?, role_from_sql(r.get(6)?)?))
    })
    .found()
}

pub fn add_member(
    conn: &Connection,
    org_id: i64,
    user_id: i64,
    role: Role,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![org_id, user_id, role.as_str(), now_secs()],
    )
    .map_err(|e| unique_conflict(e, "this user is already a member"))?;
    Ok(())
}

pub fn members(conn: &Connection, org_id: i64) -> Result<Vec<Member>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT u.id, u.email, u.name, m.role, m.created_at FROM memberships m
         JOIN users u ON u.id = m.user_id WHERE m.org_id = ?1 ORDER BY u.email",
    )?;
    let rows = stmt.query_map([org_id], |r| {
        Ok(Member {
            user_id: r.get(0)?,
            email: r.get(1)?,
            name: r.get(2)?,
            role: role_from_sql(r.get(3)?)?,
            created_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn member_role(conn: &Connection, org_id: i64, user_id: i64) -> Result<Role, StoreError> {
    conn.query_row(
        "SELECT role FROM memberships WHERE org_id = ?1 AND user_id = ?2",
        params![org_id, user_id],
        |r| role_from_sql(r.get(0)?),
    )
    .found()
}

fn owner_count(conn: &Connection, org_id: i64) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM memberships WHERE org_id = ?1 AND role = 'owner'",
        [org_id],
        |r| r.get(0),
    )?)
}

pub fn set_role(
    conn: &Connection,
    org_id: i64,
    user_id: i64,
    role: Role,
) -> Result<(), StoreError> {
    let current = member_role(conn, org_id, user_id)?;
    if current == Role::Owner && role != Role::Owner && owner_count(conn, org_id)? <= 1 {
        return Err(StoreError::Conflict(
            "an organisation needs at least one owner".into(),
        ));
    }
    conn.execute(
        "UPDATE memberships SET role = ?3 WHERE org_id = ?1 AND user_id = ?2",
        params![org_id, user_id, role.as_str()],
    )?;
    Ok(())
}

pub fn remove_member(conn: &Connection, org_id: i64, user_id: i64) -> Result<(), StoreError> {
    let current = member_role(conn, org_id, user_id)?;
    if current == Role::Owner && owner_count(conn, org_id)? <= 1 {
        return Err(StoreError::Conflict(
            "an organisation needs at least one owner".into(),
        ));
    }
    conn.execute(
        "DELETE FROM memberships WHERE org_id = ?1 AND user_id = ?2",
        params![org_id, user_id],
    )?;
    Ok(())
}

/// Derives a URL slug from a name: lowercase ASCII letters and digits joined by dashes.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        "org".into()
    } else {
        slug.chars().take(48).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::meta::{MetaStore, users};

    #[test]
    fn last_owner_cannot_be_demoted_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("m.sqlite")).unwrap();
        store
            .call_blocking(|c| {
                let org = create(c, "acme", "Acme", "UTC", "USD")?;
                let u = users::create(c, "a@x.io", "A", "hash", false)?;
                add_member(c, org.id, u.id, Role::Owner)?;
                assert!(matches!(
                    set_role(c, org.id, u.id, Role::Admin),
                    Err(StoreError::Conflict(_))
                ));
                assert!(matches!(
                    remove_member(c, org.id, u.id),
                    Err(StoreError::Conflict(_))
                ));
                let v = users::create(c, "b@x.io", "B", "hash", false)?;
                add_member(c, org.id, v.id, Role::Owner)?;
                set_role(c, org.id, u.id, Role::Viewer)?;
                assert_eq!(member_role(c, org.id, u.id)?, Role::Viewer);
                assert!(matches!(
                    create(c, "acme", "Other", "UTC", "USD"),
                    Err(StoreError::Conflict(_))
                ));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn slugs() {
        assert_eq!(slugify("Acme Widgets, Inc."), "acme-widgets-inc");
        assert_eq!(slugify("  ***  "), "org");
    }
}
