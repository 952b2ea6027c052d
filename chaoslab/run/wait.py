from chaoslab.wait import *  # moved
