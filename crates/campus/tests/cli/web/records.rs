//! Records in the browser: an edit refused then saved, a department created
//! and deleted, and one still referenced that is not.

use super::browser::{Browser, current_hash, status, wait_text};
use crate::helpers::{Env, Server};

pub async fn an_edit_shows_its_field_error_then_its_new_value(b: &Browser, env: &Env, base: &str) {
    b.open(base, "#/students?ordering=id", "list:students")
        .await;
    let n = b.renders().await;
    b.click("#results tbody tr:first-child a").await;
    b.rendered(n, "form:students").await;
    let id = current_hash(b).await.rsplit('/').next().unwrap().to_owned();
    b.fill("#i-email", "not-an-email").await;
    b.click("#save").await;
    wait_text(b, "#e-email", "Enter a valid email address.").await;
    let email = "#i-email[aria-invalid=true][aria-describedby=e-email]";
    assert_eq!(b.count(email).await, 1);
    b.screenshot(env, "edit-error").await;

    b.fill("#i-email", "renamed@example.edu").await;
    b.fill("#i-last_name", "Renamed-In-Browser").await;
    let n = b.renders().await;
    b.click("#save").await;
    let list = b.rendered(n, "list:students").await;
    assert!(list.contains("Saved "), "{list}");
    let row = b.text(&format!("#results tr[data-id='{id}']")).await;
    assert!(row.contains("Renamed-In-Browser"), "a stale row: {row}");
    assert!(row.contains("renamed@example.edu"), "{row}");
    // A changed list is downloaded, not revalidated.
    assert_ne!(status(b).await.0, "revalidated");
}

pub async fn a_referenced_department_is_not_deleted(
    b: &Browser,
    server: &Server,
    admin: &str,
    base: &str,
) {
    b.open(base, "#/departments?ordering=id", "list:departments")
        .await;
    let n = b.renders().await;
    b.click("#results tbody tr:first-child a").await;
    b.rendered(n, "form:departments").await;
    let id = current_hash(b).await.rsplit('/').next().unwrap().to_owned();
    b.click("#delete").await;
    b.click("#confirm-delete").await;
    // The API's 409 reason, not a generic failure.
    let refused = wait_text(b, "#form-errors", "still refer to it").await;
    let r = reqwest::Client::new()
        .get(format!("{}/api/departments/{id}/", server.base))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the department is gone (the page said {refused})"
    );
    assert_eq!(b.count("#delete").await, 1, "the form is still usable");
    // Asked again, the Delete button works (it was left disabled).
    b.click("#delete").await;
    let confirm = b
        .client
        .find(fantoccini::Locator::Css("#confirm-delete"))
        .await
        .unwrap();
    assert!(confirm.is_enabled().await.unwrap(), "a disabled Delete");
    b.click("#cancel-delete").await;
}

/// A department created through the form (a duplicate code refused first, at
/// its field), then deleted: the 204 takes it out of the list.
pub async fn a_department_is_created_then_deleted(b: &Browser, base: &str) {
    b.open(base, "#/departments?search=WEB", "list:departments")
        .await;
    let n = b.renders().await;
    b.click("#new").await;
    b.rendered(n, "form:departments").await;
    b.fill("#i-code", "CS").await;
    b.fill("#i-name", "Web Studies").await;
    b.click("#save").await;
    let error = wait_text(b, "#e-code", "").await;
    assert_eq!(b.count("#i-code[aria-invalid=true]").await, 1, "{error}");

    b.fill("#i-code", "WEB").await;
    let n = b.renders().await;
    b.click("#save").await;
    let list = b.rendered(n, "list:departments").await;
    assert!(list.contains("Saved WEB · Web Studies."), "{list}");
    assert_eq!(
        b.text("#results tbody tr:first-child td:nth-child(2)")
            .await,
        "Web Studies"
    );

    let n = b.renders().await;
    b.click("#results tbody tr:first-child a").await;
    b.rendered(n, "form:departments").await;
    b.click("#delete").await;
    // Changing one's mind keeps the record.
    b.click("#cancel-delete").await;
    b.click("#delete").await;
    let n = b.renders().await;
    b.click("#confirm-delete").await;
    let list = b.rendered(n, "list:departments").await;
    assert!(list.contains("Deleted WEB · Web Studies."), "{list}");
    assert!(list.contains("No results."), "{list}");
}
