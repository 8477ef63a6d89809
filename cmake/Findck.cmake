# Findck.cmake - find Concurrency Kit (libck) and define the imported target
# ck::ck. Installed beside weftConfig.cmake so that consumers of a static
# libweft can resolve its ck dependency the same way weft's own build does.
#
# Uses pkg-config's ck.pc for hints when it is available, then find_path /
# find_library, so it also works where ck was installed without a .pc file.
#
# Result: ck_FOUND, ck_INCLUDE_DIR, ck_LIBRARY, ck_VERSION (if known), ck::ck.

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
    pkg_check_modules(PC_ck QUIET ck)
endif()

find_path(ck_INCLUDE_DIR NAMES ck_ec.h HINTS ${PC_ck_INCLUDE_DIRS})
find_library(ck_LIBRARY NAMES ck HINTS ${PC_ck_LIBRARY_DIRS})
set(ck_VERSION ${PC_ck_VERSION})

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(ck
    REQUIRED_VARS ck_LIBRARY ck_INCLUDE_DIR
    VERSION_VAR ck_VERSION)
mark_as_advanced(ck_INCLUDE_DIR ck_LIBRARY)

if(ck_FOUND AND NOT TARGET ck::ck)
    add_library(ck::ck UNKNOWN IMPORTED)
    set_target_properties(ck::ck PROPERTIES
        IMPORTED_LOCATION "${ck_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${ck_INCLUDE_DIR}")
endif()
