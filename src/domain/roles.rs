//! Roles, API key scopes and the permission matrix. Pure; enforced by the web layer's extractors.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Analyst,
    Manager,
    Admin,
    Owner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// See dashboards, metrics and series.
    ViewData,
    /// Explore data in depth: drill-down by dimension, export.
    AnalyzeData,
    /// Push or correct metric points, define custom metrics.
    WriteData,
    /// Create and revoke API keys.
    ManageApiKeys,
    /// Add and remove members, change roles (never above one's own).
    ManageMembers,
    /// Read the audit log.
    ViewAudit,
    /// Organisation settings (name, time zone, currency).
    ManageOrg,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Manager,
        Role::Analyst,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::Admin => "Admin",
            Role::Manager => "Manager",
            Role::Analyst => "Analyst",
            Role::Viewer => "Viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.to_ascii_lowercase())
    }

    /// The permission matrix.
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match p {
            ViewData => true,
            AnalyzeData => self >= Role::Analyst,
            WriteData => self >= Role::Manager,
            ManageApiKeys | ManageMembers | ViewAudit => self >= Role::Admin,
            ManageOrg => self >= Role::Admin,
        }
    }

    /// Whether a member with this role may give `target` to someone (or change someone who has
    /// it): admins manage everyone below Owner; only owners make or unmake owners.
    pub fn can_assign(self, target: Role) -> bool {
        self.allows(Permission::ManageMembers)
            && (self == Role::Owner
                || target < Role::Admin
                || (self == Role::Admin && target == Role::Admin))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s.trim() {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Parses a comma-separated list such as `read,write`.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, String> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let scope = Scope::parse(part).ok_or_else(|| {
                format!("unknown scope {:?}; use read, write or admin", part.trim())
            })?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        if out.is_empty() {
            return Err("give at least one scope: read, write or admin".into());
        }
        out.sort();
        Ok(out)
    }

    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether a key holding `held` may act with `needed`: admin implies write implies read.
    pub fn satisfied_by(needed: Scope, held: &[Scope]) -> bool {
        held.iter().any(|h| *h >= needed)
    }

    /// The highest role a key creator must hold to mint a key with this scope.
    pub fn role_needed(self) -> Role {
        match self {
            Scope::Read => Role::Analyst,
            Scope::Write => Role::Manager,
            Scope::Admin => Role::Admin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_matrix() {
        use Permission::*;
        let table = [
            (ViewData, [true, true, true, true, true]),
            (AnalyzeData, [true, true, true, true, false]),
            (WriteData, [true, true, true, false, false]),
            (ManageApiKeys, [true, true, false, false, false]),
            (ManageMembers, [true, true, false, false, false]),
            (ViewAudit, [true, true, false, false, false]),
            (ManageOrg, [true, true, false, false, false]),
        ];
        for (perm, expected) in table {
            for (role, want) in Role::ALL.into_iter().zip(expected) {
                assert_eq!(role.allows(perm), want, "{role:?} {perm:?}");
            }
        }
    }

    #[test]
    fn only_owners_make_owners() {
        assert!(Role::Owner.can_assign(Role::Owner));
        assert!(!Role::Admin.can_assign(Role::Owner));
        assert!(Role::Admin.can_assign(Role::Admin));
        assert!(Role::Admin.can_assign(Role::Viewer));
        assert!(!Role::Manager.can_assign(Role::Viewer));
    }

    #[test]
    fn scopes_parse_and_imply() {
        assert_eq!(
            Scope::parse_list("write, read,read").unwrap(),
            vec![Scope::Read, Scope::Write]
        );
        assert!(Scope::parse_list("root").is_err());
        assert!(Scope::parse_list("").is_err());
        assert!(Scope::satisfied_by(Scope::Read, &[Scope::Write]));
        assert!(!Scope::satisfied_by(Scope::Write, &[Scope::Read]));
        assert!(Scope::satisfied_by(Scope::Write, &[Scope::Admin]));
    }
}
