/* Shared inside oftcore/conditions. */
#pragma once

