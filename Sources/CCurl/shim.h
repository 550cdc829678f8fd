// libcurl's multi interface and Linux's epoll, for Purser's HTTP engine. libcurl's option setters are variadic, which
// Swift cannot call, so each type of value has a typed wrapper here; epoll's event struct is packed on x86-64, so the
// loop reads events through parallel arrays instead of the struct.
#include <curl/curl.h>
#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

typedef size_t (*purser_data_callback)(char *buffer, size_t size, size_t count, void *context);

static inline CURLcode purser_easy_set_long(CURL *easy, CURLoption option, long value) {
    return curl_easy_setopt(easy, option, value);
}
static inline CURLcode purser_easy_set_offset(CURL *easy, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(easy, option, value);
}
static inline CURLcode purser_easy_set_pointer(CURL *easy, CURLoption option, const void *value) {
    return curl_easy_setopt(easy, option, value);
}
static inline CURLcode purser_easy_set_callback(CURL *easy, CURLoption option, purser_data_callback value) {
    return curl_easy_setopt(easy, option, value);
}
static inline CURLcode purser_easy_set_prereq(CURL *easy, curl_prereq_callback value) {
    return curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, value);
}
static inline CURLcode purser_easy_set_socket_callbacks(CURL *easy, curl_opensocket_callback open, curl_closesocket_callback close) {
    CURLcode result = curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open);
    return result == CURLE_OK ? curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close) : result;
}
static inline CURLcode purser_easy_get_long(CURL *easy, CURLINFO info, long *value) {
    return curl_easy_getinfo(easy, info, value);
}
static inline CURLMcode purser_multi_set_long(CURLM *multi, CURLMoption option, long value) {
    return curl_multi_setopt(multi, option, value);
}
static inline CURLMcode purser_multi_set_pointer(CURLM *multi, CURLMoption option, void *value) {
    return curl_multi_setopt(multi, option, value);
}
static inline CURLMcode purser_multi_set_socket_callback(CURLM *multi, curl_socket_callback value) {
    return curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, value);
}
static inline CURLMcode purser_multi_set_timer_callback(CURLM *multi, curl_multi_timer_callback value) {
    return curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, value);
}

/// Adds, changes or (with `events` 0 and `remove` 1) removes `descriptor` in the epoll set; 0 or errno.
static inline int purser_epoll_control(int epoll, int descriptor, unsigned int events, int operation) {
    struct epoll_event event;
    event.events = events;
    event.data.fd = descriptor;
    return epoll_ctl(epoll, operation, descriptor, &event) == 0 ? 0 : errno;
}

/// Waits up to `timeout` ms for at most `capacity` (≤ 512) events, written to `descriptors` and `events`; the count,
/// or -errno.
static inline int purser_epoll_wait(int epoll, int *descriptors, unsigned int *events, int capacity, int timeout) {
    struct epoll_event ready[512];
    if (capacity > 512) capacity = 512;
    int count = epoll_wait(epoll, ready, capacity, timeout);
    if (count < 0) return -errno;
    for (int index = 0; index < count; index++) {
        descriptors[index] = ready[index].data.fd;
        events[index] = ready[index].events;
    }
    return count;
}
