//! Page forms. Every state-changing page handler takes the same steps in the same order: check
//! the CSRF token, check the member's permission, validate (re-rendering the page with 422 and
//! per-field messages on bad input), store with its audit entry, and redirect. [`FormAction`]
//! is those steps, so a handler states only what is its own.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rusqlite::Transaction;

use crate::app::App;
use crate::domain::roles::Permission;
use crate::store::StoreError;
use crate::store::meta::audit;
use crate::web::auth::OrgMember;
use crate::web::error::PageError;

/// Form fields as sent (repeated names kept, e.g. checkboxes).
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A member's form submission that passed the CSRF and permission checks.
pub struct FormAction<'a> {
    pub member: &'a OrgMember,
    pub form: FormData,
}

/// The fields, for the helpers that turn a form into the API's JSON shape.
impl std::ops::Deref for FormAction<'_> {
    type Target = FormData;

    fn deref(&self) -> &FormData {
        &self.form
    }
}

impl<'a> FormAction<'a> {
    /// Checks the form's CSRF token, then that the member's role allows `needs`.
    pub fn accept(
        member: &'a OrgMember,
        fields: Vec<(String, String)>,
        needs: Permission,
    ) -> Result<FormAction<'a>, PageError> {
        let form = FormData(fields);
        member.check_csrf(form.get("csrf"))?;
        member.require(needs)?;
        Ok(FormAction { member, form })
    }

    /// Runs `change` on the meta store (given the member's org) and records it in the org's
    /// audit log as `action`, by this member from their address, in one transaction: both or
    /// neither. `change` returns its result and the entry's detail.
    pub async fn record<T, F>(
        &self,
        app: &App,
        action: &'static str,
        change: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, i64) -> Result<(T, String), StoreError> + Send + 'static,
    {
        let m = self.member;
        let (org_id, actor, ip) = (m.org.id, m.actor(), m.ip.clone());
        app.meta
            .call(move |c| {
                let tx = c.transaction()?;
                let (result, detail) = change(&tx, org_id)?;
                audit::record(&tx, Some(org_id), &actor, action, &detail, &ip)?;
                tx.commit()?;
                Ok(result)
            })
            .await
    }

    /// Success: to the org's page at `path` (`"api-keys"` is `/o/{slug}/api-keys`).
    pub fn done(&self, path: &str) -> Result<Response, PageError> {
        Ok(Redirect::to(&format!("/o/{}/{path}", self.member.org.slug)).into_response())
    }

    /// Bad input: the page again, with its messages, as 422.
    pub fn invalid(&self, page: &impl Template) -> Result<Response, PageError> {
        super::render_status(StatusCode::UNPROCESSABLE_ENTITY, page)
    }
}

/// Form re-rendering helpers used by templates as `self.v("field")` and `self.e("field")`.
macro_rules! form_helpers {
    ($($page:ty),*) => {$(
        impl $page {
            pub fn v(&self, field: &str) -> &str {
                self.values.get(field).map(String::as_str).unwrap_or("")
            }
            pub fn e(&self, field: &str) -> &str {
                self.errors.get(field).map(String::as_str).unwrap_or("")
            }
        }
    )*};
}

form_helpers!(
    super::session::SetupPage,
    super::session::NewOrgPage,
    super::members::MembersPage,
    super::invitations::InvitationPage
);
