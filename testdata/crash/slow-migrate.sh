# A migrate command for the crash tests. When the commit has a SLOW file,
# it leaves two Python processes behind that would write into the shared
# data 4 s later: one in the command's process group, one in a session of
# its own (setsid). Each writes its pid into data/ first. Then it waits, so
# that the test can kill slipway mid-migration.
if [ -f ../SLOW ]; then
  setsid python3 -c 'import os, time; open("../data/setsid.pid", "w").write(str(os.getpid())); time.sleep(4); open("../data/orphan-setsid", "w").write("x")' &
  python3 -c 'import os, time; open("../data/group.pid", "w").write(str(os.getpid())); time.sleep(4); open("../data/orphan-group", "w").write("x")' &
  sleep 60
fi
exec .venv/bin/python migrate.py
