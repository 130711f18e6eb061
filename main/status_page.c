/*
 * status_page.c — GET / for browsers: the status page, stored gzipped in flash.
 *
 * The page is one self-contained file that polls /stats; the board only hands out its bytes. It
 * is kept gzipped (the build compresses src/pigeonhub/data/status.html), which saves flash and
 * Wi-Fi airtime, and sent as it is stored: browsers all accept gzip. The rule for who gets it is
 * the PC hub's (src/pigeonhub/hub/endpoints.py, wants_html): the Accept header names text/html
 * and does not give it q=0. curl and WebSocket clients send a wildcard or no Accept and keep the
 * banner.
 */
#include "status_page.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "esp_log.h"

static const char *TAG = "pigeonhub";

extern const uint8_t status_page_gz_start[] asm("_binary_status_html_gz_start");
extern const uint8_t status_page_gz_end[] asm("_binary_status_html_gz_end");

/* Long enough for every browser's Accept (Chrome's is 135 bytes); a longer one is read cut,
 * and text/html comes first in all of them. */
#define ACCEPT_BYTES 256

/* Does the media range s[0..n) (its parameters included) name text/html with a q above 0? */
static bool range_is_html(const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    const char *params = memchr(s, ';', n);
    size_t kind = params ? (size_t)(params - s) : n;
    while (kind && isspace((unsigned char)s[kind - 1])) {
        kind--;
    }
    if (kind != 9 || strncasecmp(s, "text/html", 9) != 0) {
        return false;
    }
    /* q=0, q=0.0, q=0.000: refused. Any other q, or none, accepts. */
    for (const char *p = params; p && p < s + n; p = memchr(p + 1, ';', (size_t)(s + n - p - 1))) {
        const char *q = p + 1;
        while (q < s + n && isspace((unsigned char)*q)) {
            q++;
        }
        if (q + 1 < s + n && (q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
            return strtod(q + 2, NULL) > 0; /* the header is NUL-terminated: strtod stops there */
        }
    }
    return true;
}

bool status_page_wanted(httpd_req_t *req)
{
    char accept[ACCEPT_BYTES];
    if (strcmp(req->uri, "/") != 0) {
        return false;
    }
    esp_err_t err = httpd_req_get_hdr_value_str(req, "Accept", accept, sizeof(accept));
    if (err != ESP_OK && err != ESP_ERR_HTTPD_RESULT_TRUNC) {
        return false; /* no Accept header */
    }
    for (const char *range = accept; *range;) {
        const char *comma = strchr(range, ',');
        size_t len = comma ? (size_t)(comma - range) : strlen(range);
        if (range_is_html(range, len)) {
            return true;
        }
        range += len + (comma != NULL);
    }
    return false;
}

esp_err_t status_page_send(httpd_req_t *req)
{
    httpd_resp_set_type(req, "text/html; charset=utf-8");
    httpd_resp_set_hdr(req, "Content-Encoding", "gzip");
    httpd_resp_set_hdr(req, "Cache-Control", "no-cache");
    httpd_resp_set_hdr(req, "Vary", "Accept");
    /* The page may only talk to this hub, as on the PC hub. */
    httpd_resp_set_hdr(req, "Content-Security-Policy",
                       "default-src 'none'; script-src 'unsafe-inline'; "
                       "style-src 'unsafe-inline'; connect-src 'self'");
    esp_err_t err = httpd_resp_send(req, (const char *)status_page_gz_start,
                                    status_page_gz_end - status_page_gz_start);
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "status page: sending failed: %s", esp_err_to_name(err));
    }
    return err;
}
