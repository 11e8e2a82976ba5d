#pragma once
// encode()/decode() (base64, core/base64.hpp) and the hex digests of md5() ... sha512(). The SQL
// function rows themselves are in functions.hpp's table.
#include "core/base64.hpp"

namespace nimbus::rules::sql {

using core::base64_decode;
using core::base64_encode;

}  // namespace nimbus::rules::sql
