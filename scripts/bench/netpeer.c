/* The network benchmark's traffic tool (scripts/bench/net.sh), built static
 * so the same binary runs on the host and inside every container image.
 *
 *   netpeer send HOST PORT MIB   connect, write MIB MiB, half-close, wait for
 *                                the peer to close; prints MiB/s
 *   netpeer recv PORT [PORTFILE] listen on 0.0.0.0:PORT (0: any, written to
 *                                PORTFILE), take one connection, read to EOF;
 *                                prints MiB/s from the first byte
 *   netpeer sink PORT            listen on 0.0.0.0:PORT; read every connection
 *                                to EOF, one after another, then close it
 *   netpeer http PORT            answer every connection with a short HTTP
 *                                response (one request per connection)
 *   netpeer conns HOST PORT SECS sequential short HTTP requests; prints
 *                                connections per second
 *   netpeer source PORT MIB      listen on 0.0.0.0:PORT; write MIB MiB to
 *                                every connection, one after another, then
 *                                close it
 *   netpeer fetch HOST PORT      connect, read to EOF; prints MiB/s from the
 *                                connect
 *
 * Why not busybox: busybox `head -c` spends most of a CPU per 100 MiB/s and
 * busybox `nc` moves 8 KiB per syscall, so with them the benchmark measures
 * busybox, not the network. Large reads and writes here keep the tool far
 * below the stacks being compared. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
static char buf[CHUNK];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int dial(const char *host, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) die("address");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("socket");
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    return s;
}

static int listen_on(int port, const char *portfile) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    socklen_t len = sizeof a;
    int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("socket");
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(s, 128) < 0) die("listen");
    if (portfile) {
        getsockname(s, (struct sockaddr *)&a, &len);
        FILE *f = fopen(portfile, "w");
        if (!f) die(portfile);
        fprintf(f, "%d\n", ntohs(a.sin_port));
        fclose(f);
    }
    return s;
}

static int do_send(const char *host, int port, long mib) {
    int s = dial(host, port);
    long left = mib << 20;
    double t = now();
    while (left > 0) {
        ssize_t n = write(s, buf, left < CHUNK ? left : CHUNK);
        if (n <= 0) die("write");
        left -= n;
    }
    shutdown(s, SHUT_WR);
    while (read(s, buf, sizeof buf) > 0) {
    }
    printf("%.0f\n", mib / (now() - t));
    return 0;
}

static int do_recv(int port, const char *portfile) {
    int l = listen_on(port, portfile), c = accept(l, NULL, NULL);
    if (c < 0) die("accept");
    long total = 0;
    double t = 0;
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0) {
        if (t == 0) t = now();
        total += n;
    }
    printf("%.0f\n", total / 1048576.0 / (now() - t));
    return 0;
}

_Noreturn static void do_source(int port, long mib) {
    int l = listen_on(port, NULL);
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        long left = mib << 20;
        while (left > 0) {
            ssize_t n = write(c, buf, left < CHUNK ? left : CHUNK);
            if (n <= 0) break;
            left -= n;
        }
        close(c);
    }
}

static int do_fetch(const char *host, int port) {
    double t = now();
    int s = dial(host, port);
    long total = 0;
    ssize_t n;
    while ((n = read(s, buf, sizeof buf)) > 0) total += n;
    printf("%.0f\n", total / 1048576.0 / (now() - t));
    return 0;
}

_Noreturn static void do_sink(int port) {
    int l = listen_on(port, NULL);
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        while (read(c, buf, sizeof buf) > 0) {
        }
        close(c);
    }
}

static const char reply[] =
    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n";

_Noreturn static void do_http(int port) {
    int l = listen_on(port, NULL);
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        /* One read holds a short request; answer and close. */
        if (read(c, buf, sizeof buf) > 0) write(c, reply, sizeof reply - 1);
        close(c);
    }
}

static int do_conns(const char *host, int port, double secs) {
    static const char req[] = "GET / HTTP/1.0\r\n\r\n";
    long n = 0;
    double t = now(), end = t + secs;
    while (now() < end) {
        int s = dial(host, port);
        if (write(s, req, sizeof req - 1) < 0) die("write");
        while (read(s, buf, sizeof buf) > 0) {
        }
        close(s);
        n++;
    }
    printf("%.0f\n", n / (now() - t));
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "send")) return do_send(argv[2], atoi(argv[3]), atol(argv[4]));
    if (argc >= 3 && !strcmp(argv[1], "recv")) return do_recv(atoi(argv[2]), argc > 3 ? argv[3] : NULL);
    if (argc >= 3 && !strcmp(argv[1], "sink")) do_sink(atoi(argv[2]));
    if (argc >= 3 && !strcmp(argv[1], "http")) do_http(atoi(argv[2]));
    if (argc >= 4 && !strcmp(argv[1], "source")) do_source(atoi(argv[2]), atol(argv[3]));
    if (argc >= 4 && !strcmp(argv[1], "fetch")) return do_fetch(argv[2], atoi(argv[3]));
    if (argc >= 5 && !strcmp(argv[1], "conns")) return do_conns(argv[2], atoi(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: netpeer send HOST PORT MIB | recv PORT [PORTFILE] | sink PORT | http PORT | conns HOST PORT SECS | source PORT MIB | fetch HOST PORT\n");
    return 2;
}
