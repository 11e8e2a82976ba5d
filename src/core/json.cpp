// Boost.JSON compiled once for the whole program (header-only mode, see BOOST_JSON_NO_LIB).
#include <boost/json/src.hpp>
