// KILN_CHECK*: invariants. A failed check prints file:line and the condition and aborts; it is for
// bugs, never for bad input (use Status for that). Checks stay on in release builds.
// KILN_DCHECK* compile away unless KILN_DEBUG_CHECKS is defined (hot loops).
#pragma once

#include <sstream>
#include <string>

namespace kiln::internal {

// Collects an optional streamed message and aborts in its destructor.
class CheckFailure final {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `KILN_CHECK(x) << "msg"` compile as a void expression.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace kiln::internal

#define KILN_CHECK(cond)                              \
  (cond) ? (void)0                                    \
         : ::kiln::internal::Voidify() &              \
               ::kiln::internal::CheckFailure(__FILE__, __LINE__, #cond).stream()

#define KILN_CHECK_OP(a, op, b) \
  KILN_CHECK((a)op(b)) << "(" << (a) << " " #op " " << (b) << ") "
#define KILN_CHECK_EQ(a, b) KILN_CHECK_OP(a, ==, b)
#define KILN_CHECK_NE(a, b) KILN_CHECK_OP(a, !=, b)
#define KILN_CHECK_LT(a, b) KILN_CHECK_OP(a, <, b)
#define KILN_CHECK_LE(a, b) KILN_CHECK_OP(a, <=, b)
#define KILN_CHECK_GT(a, b) KILN_CHECK_OP(a, >, b)
#define KILN_CHECK_GE(a, b) KILN_CHECK_OP(a, >=, b)
#define KILN_CHECK_OK(expr)                                                  \
  do {                                                                       \
    ::kiln::Status _kiln_check_status = (expr);                              \
    KILN_CHECK(_kiln_check_status.ok()) << _kiln_check_status.ToString();    \
  } while (0)

#ifdef KILN_DEBUG_CHECKS
#define KILN_DCHECK(cond) KILN_CHECK(cond)
#else
#define KILN_DCHECK(cond) \
  while (false) KILN_CHECK(cond)
#endif
