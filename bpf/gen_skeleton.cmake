# cmake -DBPFTOOL=... -DOBJECT=x.bpf.o -DNAME=x -DOUTPUT=x.skel.h -P gen_skeleton.cmake
# Runs `bpftool gen skeleton` and moves the header into place only when it succeeded.
execute_process(
  COMMAND ${BPFTOOL} gen skeleton ${OBJECT} name ${NAME}
  OUTPUT_FILE ${OUTPUT}.tmp
  ERROR_VARIABLE err
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE ${OUTPUT}.tmp)
  message(FATAL_ERROR "bpftool gen skeleton ${OBJECT} failed (${rc}): ${err}")
endif()
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
