"""Virtual serial links: the emulator's end of a pseudo-terminal, socket or in-process port."""
