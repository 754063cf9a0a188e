//! Boot-time reconcile after a crash: what a deploy interrupted mid-way left in the store is
//! brought back in line with the app's active release before anything is restored.
//!
//! A rollout writes, in order: release status (`installing`, `starting`), instance rows, then
//! per resource its row and functions, then the app's active release, then `ready`. A crash
//! can stop it between any two of these. At boot:
//!
//! - a release that is not terminal and not active was interrupted before it took traffic: it
//!   is marked `failed` ("interrupted by a server restart while <status>") and never restarted;
//! - a release that is active but not terminal had switched traffic already: it is the one the
//!   boot restores, so it completes (`ready`); a `ready` release that is not active (the crash
//!   fell between the switch and retiring it) becomes `superseded`;
//! - resource rows (and their functions) written by any release other than the active one are
//!   deleted; the restore of the active release writes them again from its manifest (status
//!   `deployed`). An app with no active release keeps no resource rows;
//! - instance rows are dropped by the agent (`forget_stale_instances`): the processes died
//!   with the server (workers exit when their protocol pipe closes, even mid-load).

use morel_core::ReleaseStatus;
use morel_store::AppRow;

use crate::ApiError;
use crate::deploy::Deployer;

impl Deployer {
    /// Repairs what an interrupted deploy of `app` left behind (see the module docs).
    pub(crate) async fn reconcile_interrupted(&self, app: &AppRow) -> Result<(), ApiError> {
        for r in self.store.list_releases(&app.key).await? {
            if !r.status.is_terminal() && Some(r.number) != app.active_release {
                let msg = format!("interrupted by a server restart while {}", r.status);
                tracing::warn!(app = %app.key, release = r.number, "{msg}");
                self.logs
                    .event(&app.key, format!("release v{}: {msg}", r.number));
                self.store
                    .set_release_status(&app.key, r.number, ReleaseStatus::Failed, Some(&msg))
                    .await?;
            } else if r.status == ReleaseStatus::Ready && Some(r.number) != app.active_release {
                // The crash fell between switching the active release and retiring this one.
                self.store
                    .set_release_status(&app.key, r.number, ReleaseStatus::Superseded, None)
                    .await?;
            }
        }
        for res in self.store.list_resources(&app.key).await? {
            if Some(res.release) != app.active_release {
                tracing::info!(app = %app.key, resource = %res.name, release = res.release, "dropping the state an interrupted deploy wrote");
                self.store.delete_resource(&app.key, &res.name).await?;
            }
        }
        // Functions whose resource row is gone (a crash between the two writes).
        let kept: std::collections::BTreeSet<String> = self
            .store
            .list_resources(&app.key)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        let orphans: std::collections::BTreeSet<String> = self
            .store
            .list_functions(&app.key)
            .await?
            .into_iter()
            .map(|f| f.resource)
            .filter(|r| !kept.contains(r))
            .collect();
        for r in orphans {
            self.store.replace_functions(&app.key, &r, &[]).await?;
        }
        Ok(())
    }
}
