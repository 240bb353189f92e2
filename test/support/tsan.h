/* tsan — UNDER_ASAN is defined when AddressSanitizer is built in (gcc sets
 * __SANITIZE_ADDRESS__, clang answers __has_feature). Its quarantine holds
 * freed memory, so RSS says nothing in that build. */
#ifndef KDIAG_TEST_TSAN_H
#define KDIAG_TEST_TSAN_H

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#endif
