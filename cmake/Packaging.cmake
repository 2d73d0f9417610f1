# The Debian package of mxedge (`cpack -G DEB` in the build directory, or `ninja package`): the
# daemons and tools, the systemd units, tmpfiles and sysctl settings, the host tuning script, the
# example configuration and the maintainer scripts that create the service users
# (firmware-image/package/). Runtime dependencies come from dpkg-shlibdeps.
include(GNUInstallDirs)

set(MXEDGE_IMAGE_DIR ${CMAKE_SOURCE_DIR}/firmware-image)
install(FILES
  ${MXEDGE_IMAGE_DIR}/systemd/mxedge-dataplane.service
  ${MXEDGE_IMAGE_DIR}/systemd/mxedge-controlplane.service
  ${MXEDGE_IMAGE_DIR}/systemd/mxedge-tune.service
  DESTINATION lib/systemd/system)
install(FILES ${MXEDGE_IMAGE_DIR}/systemd/mxedge.tmpfiles DESTINATION lib/tmpfiles.d RENAME mxedge.conf)
install(FILES ${MXEDGE_IMAGE_DIR}/tuning/60-mxedge.conf DESTINATION lib/sysctl.d)
install(PROGRAMS ${MXEDGE_IMAGE_DIR}/tuning/mxedge-tune ${MXEDGE_IMAGE_DIR}/tuning/mxedge-prepare-dataplane
  DESTINATION libexec/mxedge)
install(FILES ${CMAKE_SOURCE_DIR}/policy/examples/mxedge.yaml DESTINATION share/doc/mxedge/examples)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/docs/life-of-a-message.md ${CMAKE_SOURCE_DIR}/docs/smtp-replies.md
  DESTINATION share/doc/mxedge)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mxedge)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT "mxedge developers <mxedge@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "SMTP edge gateway with an XDP fast path, DANE and MTA-STS")
set(CPACK_PACKAGE_DESCRIPTION "mxedge terminates SMTP and TLS on dedicated cores, spools every message durably
before acknowledging it, relays inbound mail to the internal server and delivers outbound mail
only over connections that satisfy each destination's DANE / MTA-STS policy. An XDP program
steers SMTP flows to the worker cores and drops flooding and blocklisted sources.")
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Debug information stays in the build tree; the package carries stripped binaries.
set(CPACK_STRIP_FILES ON)
# adduser for the service users; dns-root-data for the default DNSSEC trust anchor; ca-certificates
# for MTA-STS and WebPKI verification; iproute2/procps/util-linux for the tuning script.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, dns-root-data, ca-certificates, iproute2, procps, util-linux")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "irqbalance")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${MXEDGE_IMAGE_DIR}/package/postinst ${MXEDGE_IMAGE_DIR}/package/prerm ${MXEDGE_IMAGE_DIR}/package/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Reproducible: file times from SOURCE_DATE_EPOCH when set (dpkg-deb honours it).
include(CPack)
