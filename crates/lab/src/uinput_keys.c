/*
 * lab-uinput-keys: a virtual keyboard for the lab's virtio-input test
 * (tests/lab_virtio.rs). Run in L1 (whose kernel has uinput and evdev):
 *
 *     lab-uinput-keys TRIGGER KEY...
 *
 * creates a keyboard named "bhyve-lab keys" through /dev/uinput, prints
 * "EVDEV /dev/input/eventN" (the node to hand to bhyve), waits until the
 * file TRIGGER exists, then presses and releases each KEY (Linux key
 * codes, decimal) in turn, one SYN_REPORT frame per press and release,
 * prints "SENT" and keeps the device until killed: removing it would
 * take the evdev away from bhyve while the guest still reads.
 *
 * Built on the host with `gcc -static` by the test; kept tiny on purpose.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/uinput.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "lab-uinput-keys: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void emit(int fd, int type, int code, int value)
{
	struct input_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.code = code;
	ev.value = value;
	if (write(fd, &ev, sizeof(ev)) != sizeof(ev))
		die("write");
}

int main(int argc, char **argv)
{
	struct uinput_setup setup;
	char sysname[64], path[160];
	struct dirent *de;
	DIR *dir;
	int fd, i;

	if (argc < 3) {
		fprintf(stderr, "usage: lab-uinput-keys TRIGGER KEY...\n");
		return 64;
	}
	fd = open("/dev/uinput", O_WRONLY | O_NONBLOCK);
	if (fd < 0)
		die("/dev/uinput");
	if (ioctl(fd, UI_SET_EVBIT, EV_KEY) < 0)
		die("UI_SET_EVBIT");
	for (i = 2; i < argc; i++)
		if (ioctl(fd, UI_SET_KEYBIT, atoi(argv[i])) < 0)
			die("UI_SET_KEYBIT");
	memset(&setup, 0, sizeof(setup));
	setup.id.bustype = BUS_VIRTUAL;
	setup.id.vendor = 0x1af4;
	setup.id.product = 0x4b42;
	setup.id.version = 1;
	strcpy(setup.name, "bhyve-lab keys");
	if (ioctl(fd, UI_DEV_SETUP, &setup) < 0 || ioctl(fd, UI_DEV_CREATE) < 0)
		die("creating the device");
	if (ioctl(fd, UI_GET_SYSNAME(sizeof(sysname)), sysname) < 0)
		die("UI_GET_SYSNAME");

	/* The evdev node appears under the input device once evdev binds. */
	snprintf(path, sizeof(path), "/sys/devices/virtual/input/%s", sysname);
	for (i = 0; i < 100; i++) {
		dir = opendir(path);
		if (!dir)
			die(path);
		while ((de = readdir(dir)))
			if (!strncmp(de->d_name, "event", 5))
				break;
		if (de) {
			printf("EVDEV /dev/input/%s\n", de->d_name);
			fflush(stdout);
			closedir(dir);
			break;
		}
		closedir(dir);
		usleep(100000);
	}
	if (i == 100) {
		fprintf(stderr, "lab-uinput-keys: no event node (is evdev loaded?)\n");
		return 1;
	}

	while (access(argv[1], F_OK) != 0)
		usleep(50000);
	for (i = 2; i < argc; i++) {
		emit(fd, EV_KEY, atoi(argv[i]), 1);
		emit(fd, EV_SYN, SYN_REPORT, 0);
		emit(fd, EV_KEY, atoi(argv[i]), 0);
		emit(fd, EV_SYN, SYN_REPORT, 0);
		usleep(100000);
	}
	printf("SENT\n");
	fflush(stdout);
	for (;;)
		pause();
}
