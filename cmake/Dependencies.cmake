# Every dependency comes from Debian's archive (scripts/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(OpenSSL 3.0 REQUIRED)
find_package(Protobuf REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(YAMLCPP REQUIRED IMPORTED_TARGET yaml-cpp)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
# libunbound's .pc names its static-only dependencies (nettle, libevent) as Requires.private, whose
# -dev packages are not needed to link the shared library; find it directly.
find_library(UNBOUND_LIBRARY unbound REQUIRED)
find_path(UNBOUND_INCLUDE_DIR unbound.h REQUIRED)
add_library(mxedge::unbound UNKNOWN IMPORTED)
set_target_properties(mxedge::unbound PROPERTIES IMPORTED_LOCATION ${UNBOUND_LIBRARY}
  INTERFACE_INCLUDE_DIRECTORIES ${UNBOUND_INCLUDE_DIR})
pkg_check_modules(LDNS REQUIRED IMPORTED_TARGET ldns)
# libunbound runs on the caller's libevent base (ub_ctx_create_event): the libevent it links.
pkg_check_modules(LIBEVENT REQUIRED IMPORTED_TARGET libevent)
find_package(nlohmann_json 3.11 REQUIRED)
find_package(ZLIB REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
if(MXEDGE_TESTS)
  find_package(GTest REQUIRED)
  find_package(benchmark REQUIRED)
endif()

# protobuf_generate_cpp is deprecated; generate explicitly so the include path is the proto root.
function(mxedge_proto_library name)
  cmake_parse_arguments(ARG "" "ROOT" "PROTOS" ${ARGN})
  set(srcs)
  foreach(proto ${ARG_PROTOS})
    get_filename_component(abs ${proto} ABSOLUTE)
    file(RELATIVE_PATH rel ${ARG_ROOT} ${abs})
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    set(out_cc ${CMAKE_CURRENT_BINARY_DIR}/gen/${base}.pb.cc)
    set(out_h ${CMAKE_CURRENT_BINARY_DIR}/gen/${base}.pb.h)
    add_custom_command(
      OUTPUT ${out_cc} ${out_h}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/gen
      COMMAND protobuf::protoc --cpp_out=${CMAKE_CURRENT_BINARY_DIR}/gen -I ${ARG_ROOT} ${abs}
      DEPENDS ${abs} protobuf::protoc
      COMMENT "protoc ${rel}")
    list(APPEND srcs ${out_cc})
  endforeach()
  add_library(${name} STATIC ${srcs})
  target_include_directories(${name} SYSTEM PUBLIC ${CMAKE_CURRENT_BINARY_DIR}/gen)
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf)
endfunction()
