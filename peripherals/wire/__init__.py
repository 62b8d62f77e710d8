"""Wire protocol specs (framers and codecs): pure byte functions shared by emulators and drivers."""
