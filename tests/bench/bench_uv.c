/* libuv peers for W6 and W7: the idiomatic libuv echo and HTTP hello-world servers
   (uv_read_start with a per-read buffer, uv_write with the response). */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char http_response[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
#define RESP_LEN (sizeof http_response - 1)

typedef struct conn { uv_tcp_t tcp; int http; char tail[4]; } conn;
typedef struct wreq { uv_write_t req; char data[]; } wreq;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    static char slab[65536]; /* one thread, and each read is consumed at once */
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_close(uv_handle_t *h) { free(h); }
static void on_write(uv_write_t *req, int status) {
    (void)status;
    free(req);
}

static void send_copy(conn *c, const char *data, size_t len) {
    wreq *w = (wreq *)malloc(sizeof *w + len);
    if (!w) return;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) free(w);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    conn *c = (conn *)s;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (!c->http) {
        send_copy(c, buf->base, (size_t)n);
        return;
    }
    /* Count request ends, carrying the last 3 bytes over for a split "\r\n\r\n". */
    int k = 0;
    for (ssize_t i = 0; i < n; i++) {
        memmove(c->tail, c->tail + 1, 3);
        c->tail[3] = buf->base[i];
        if (memcmp(c->tail, "\r\n\r\n", 4) == 0) k++;
    }
    if (k) {
        char out[32 * RESP_LEN];
        if (k > 32) k = 32;
        for (int i = 0; i < k; i++) memcpy(out + (size_t)i * RESP_LEN, http_response, RESP_LEN);
        send_copy(c, out, (size_t)k * RESP_LEN);
    }
}

static int server_http;
static void on_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    conn *c = (conn *)calloc(1, sizeof *c);
    if (!c) return;
    c->http = server_http;
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    else uv_close((uv_handle_t *)&c->tcp, on_close);
}

static int uv_server(int listen_fd, int http) {
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    server_http = http;
    uv_tcp_init(loop, &server);
    if (uv_tcp_open(&server, listen_fd) != 0) return 1;
    if (uv_listen((uv_stream_t *)&server, 1024, on_connection) != 0) return 1;
    return uv_run(loop, UV_RUN_DEFAULT);
}

int uv_echo_server(int listen_fd) { return uv_server(listen_fd, 0); }
int uv_http_server(int listen_fd) { return uv_server(listen_fd, 1); }
