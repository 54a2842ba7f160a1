//! The conformance suite: HTTP caching requirements of RFC 9111, RFC 5861, RFC 8246 and
//! RFC 9211, each checked through the real `cachet-proxy` in front of a scripted origin,
//! as a user of the proxy sees them (status, body, `Cache-Status` without its `ttl`,
//! `Age`, and how many requests reached the origin).
//!
//! Every case is an `async fn(Mode)` named after the section it checks; the table at the
//! bottom runs it in `shared` and `private` mode (tests `rfc9111::shared::…` and
//! `rfc9111::private::…`), and a case whose requirement differs by mode says so with a
//! `match`. The proxy and the origin share a [`ManualClock`] (the origin's `Date` comes
//! from it), so time moves only when a case says so and nothing sleeps to go stale.
//!
//! Layer-only cases, which need a `CacheLayer` setting the proxy has no flag for, or
//! look at what is stored rather than at what the proxy sends on:
//! - `store_set_cookie(true)` in a shared cache;
//! - hop-by-hop and `Connection`-named headers left out of the stored entry (the proxy
//!   removes them from everything it sends, stored or not).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cachet::clock::{Clock, ManualClock};
use cachet::{Cache, CacheLayer, CacheStatus, MemoryStore};
use cachet_proxy::Mode;
use cachet_tests::{Origin, Reply, Seen, client, get};
use http::{Method, Request};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::Layer;

use crate::proxy::{Answer, RunningProxy};

/// One case's world: a scripted origin, a proxy in front of it, and their clock.
struct Case {
    origin: Origin,
    proxy: RunningProxy,
    clock: ManualClock,
}

impl Case {
    async fn start(mode: Mode, script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        // A whole second, so that the origin's `Date` (in seconds) is exactly the clock.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the system clock is past 1970");
        let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(now.as_secs()));
        let origin = Origin::start_dated(clock.clone(), script).await;
        let mode_flag = match mode {
            Mode::Shared => "shared",
            Mode::Private => "private",
        };
        let proxy =
            RunningProxy::start_with_clock(&origin, &["--mode", mode_flag], clock.clone()).await;
        Self {
            origin,
            proxy,
            clock,
        }
    }

    fn advance(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
    }

    /// The clock's time `seconds` from now, as an HTTP date.
    fn date_in(&self, seconds: u64) -> String {
        httpdate::fmt_http_date(self.clock.now() + Duration::from_secs(seconds))
    }

    async fn get(&self, path: &str) -> Answer {
        self.proxy.get(path).await
    }

    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.proxy.send(Method::GET, path, headers).await
    }

    async fn send(&self, method: Method, path: &str) -> Answer {
        self.proxy.send(method, path, &[]).await
    }
}

/// A reply `max-age=60` with this body.
fn fresh_for_a_minute(body: &'static str) -> Reply {
    Reply::ok(body).header("cache-control", "max-age=60")
}

mod freshness;
mod invalidation;
mod layer_only;
mod request;
mod response;
mod stale;
mod validation;
mod vary;

use freshness::*;
use invalidation::*;
use request::*;
use response::*;
use stale::*;
use validation::*;
use vary::*;

/// Runs each case through the proxy in both modes: `rfc9111::shared::<case>` and
/// `rfc9111::private::<case>`.
macro_rules! in_both_modes {
    ($($(#[$attr:meta])* $case:ident),+ $(,)?) => {
        mod shared {
            $(
                $(#[$attr])*
                #[tokio::test]
                async fn $case() {
                    super::$case(cachet_proxy::Mode::Shared).await;
                }
            )+
        }
        mod private {
            $(
                $(#[$attr])*
                #[tokio::test]
                async fn $case() {
                    super::$case(cachet_proxy::Mode::Private).await;
                }
            )+
        }
    };
}

in_both_modes![
    rfc9111_4_2_a_max_age_1_entry_is_refetched_after_expiry,
    rfc9111_4_2_3_a_hit_carries_its_age_and_the_origins_date,
    rfc9211_2_5_ttl_is_the_remaining_freshness_and_negative_once_stale,
    rfc9111_5_3_expires_is_read_in_all_three_date_formats,
    rfc9111_5_3_an_invalid_expires_is_stale,
    rfc9111_4_1_two_vary_accept_variants_are_both_kept,
    rfc9111_4_1_a_header_in_two_lines_selects_the_variant_of_one_combined_line,
    rfc9111_4_1_vary_star_is_never_stored,
    rfc9111_4_3_a_stale_entry_is_revalidated_and_the_304_serves_the_stored_body,
    rfc9111_4_3_4_a_304_naming_another_representation_updates_nothing,
    rfc9111_4_3_4_an_age_from_before_the_304_is_not_counted_again,
    rfc9111_4_3_2_a_clients_matching_validator_gets_304_from_a_fresh_entry,
    rfc9111_4_3_2_star_a_tag_with_a_comma_and_if_modified_since_by_date,
    rfc9111_4_3_2_a_stored_error_is_served_whole_to_a_matching_validator,
    rfc9111_4_3_5_a_head_response_freshens_the_stored_get,
    rfc9111_4_3_5_a_head_response_that_differs_makes_the_stored_get_stale,
    rfc9111_4_4_a_post_invalidates_the_stored_get_and_its_variants,
    rfc9111_4_4_an_invalidation_in_the_same_instant_hides_every_variant,
    rfc9111_4_4_location_and_content_location_of_the_same_origin_are_invalidated,
    rfc9111_4_4_a_relative_location_is_resolved_against_the_request_uri,
    rfc5861_4_stale_if_error_serves_the_stored_response_when_the_origin_answers_500,
    rfc5861_4_stale_if_error_covers_an_unreachable_origin,
    rfc9111_5_2_2_2_must_revalidate_forbids_serving_stale,
    rfc9111_5_2_2_8_proxy_revalidate_binds_the_shared_proxy_only,
    rfc5861_3_stale_while_revalidate_answers_at_once_and_refreshes_once_per_key,
    rfc5861_3_stale_while_revalidate_yields_to_the_requests_own_limits,
    rfc5861_3_past_the_stale_while_revalidate_window_the_request_waits_for_the_origin,
    rfc9111_5_2_1_1_request_max_age_limits_the_age_served,
    rfc9111_5_2_1_2_max_stale_accepts_a_stale_response_within_its_bound,
    rfc9111_5_2_1_3_min_fresh_asks_for_freshness_left,
    rfc9211_2_2_fwd_request_when_a_request_directive_refuses_a_fresh_response,
    rfc9111_5_2_1_4_a_request_with_no_cache_goes_to_the_origin,
    rfc9111_5_4_pragma_no_cache_counts_only_without_request_cache_control,
    rfc9111_5_2_1_7_only_if_cached_answers_504_on_a_miss,
    rfc9111_5_2_2_10_s_maxage_is_honoured_shared_and_ignored_private,
    rfc9111_5_2_2_7_private_responses_are_kept_by_the_private_proxy_only,
    rfc9111_5_2_2_3_must_understand_stores_only_statuses_cachet_understands,
    rfc9111_5_2_2_private_and_no_cache_field_names_are_not_served_from_the_cache,
    rfc9111_3_5_authorization_responses_are_shared_only_when_the_origin_allows,
    rfc9111_3_set_cookie_responses_are_kept_by_the_private_proxy_only,
    rfc8246_2_immutable_survives_a_reload_in_the_private_proxy_only,
    rfc9111_3_1_hop_by_hop_and_connection_named_headers_are_never_served,
    rfc9110_7_6_1_the_upstreams_connection_removes_its_own_cache_status_not_the_proxys,
];
