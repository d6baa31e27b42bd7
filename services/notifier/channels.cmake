# The notifier's channels (push, email, SMS over real transports), its
# outbound guard and its templates: a library the engine links, with its
# unit test and an integration test against a real SMTP server and an
# HTTP receiver.  Included from services/notifier/CMakeLists.txt.
if(NOT TARGET PkgConfig::LIBCURL)
  pkg_check_modules(LIBCURL REQUIRED IMPORTED_TARGET libcurl)
endif()

add_library(notifier_channels STATIC
  ${CMAKE_CURRENT_LIST_DIR}/channels.c
  ${CMAKE_CURRENT_LIST_DIR}/outbound.c
  ${CMAKE_CURRENT_LIST_DIR}/push.c
  ${CMAKE_CURRENT_LIST_DIR}/email.c
  ${CMAKE_CURRENT_LIST_DIR}/sms.c
  ${CMAKE_CURRENT_LIST_DIR}/template.c)
target_include_directories(notifier_channels PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(notifier_channels PUBLIC common_core PkgConfig::LIBCURL
  PkgConfig::JANSSON PkgConfig::OPENSSL PRIVATE cm_warnings)

cm_unit_test(notifier_channels_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/channels_test.c
  LIBS notifier_channels)
if(TARGET notifier_channels_test)
  # The shipped templates (deploy/templates) must all render.
  target_compile_definitions(notifier_channels_test PRIVATE
    NT_TEMPLATES_DIR="${CMAKE_SOURCE_DIR}/deploy/templates")
endif()

if(BUILD_TESTING)
  # Real servers, no mocks: aiosmtpd (Debian's python3-aiosmtpd, run by
  # /usr/bin/python3) as the relay, HTTP receivers in the test itself.
  add_executable(test_notifier_channels
    ${CMAKE_SOURCE_DIR}/tests/integration/test_notifier_channels.c)
  target_link_libraries(test_notifier_channels PRIVATE notifier_channels
    test_harness ${CMOCKA_LINK_LIBRARIES} Threads::Threads cm_warnings)
  add_test(NAME test_notifier_channels COMMAND test_notifier_channels)
  set_tests_properties(test_notifier_channels PROPERTIES TIMEOUT 180
    LABELS integration
    ENVIRONMENT "TEST_LOG_DIR=${CMAKE_BINARY_DIR}/test-logs")
endif()
