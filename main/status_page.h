/*
 * status_page.h — the status page at GET / for browsers (src/pigeonhub/data/status.html, gzipped
 * into the firmware at build time by main/CMakeLists.txt). Every other client keeps the reference
 * server's banner.
 */
#ifndef PH_STATUS_PAGE_H
#define PH_STATUS_PAGE_H

#include <stdbool.h>
#include "esp_err.h"
#include "esp_http_server.h"

/* Is this GET / from a browser (its Accept names text/html with a q above 0)? */
bool status_page_wanted(httpd_req_t *req);
/* Send the page (Content-Encoding: gzip: every browser accepts it, and it is stored so). */
esp_err_t status_page_send(httpd_req_t *req);

#endif /* PH_STATUS_PAGE_H */
