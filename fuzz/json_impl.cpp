// Boost.JSON is used header-only; fuzzers are built straight from sources, so they link its
// implementation from this one translation unit.
#include <boost/json/src.hpp>
